"""Modal screens pushed over a full screen: confirm, hints, help, create-workspace, side-by-side compare."""
