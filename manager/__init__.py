"""Training Manager: a web app over the data bridge and the training CLI (issue 15).

`train-act-manager --data_root DIR --runs_root DIR` serves datasets (cards, episodes with the
bridge's quality checks, frames decoded by the bridge), curation into new LeRobot v3.0 datasets
(the project's writer) and training runs (the real CLI as a subprocess). See docs/manager.md.
"""
