"""What the stages after pretraining share: conversation batches for mid-training and SFT, the policy-gradient
pieces of RL, and the small offline conversation sets the CPU preset trains on when no task data is downloaded.

The scripts that use them are nanochat/scripts/mid_train.py, chat_sft.py and chat_rl.py.
"""
