"""The data track: learner_dataloader.py, the document reader and packing loader of nanochat/dataloader.py."""
