"""Closed-loop demo: a small visual reaching task, a scripted expert, a LeRobot v3.0 recorder and
a closed-loop evaluator for policies trained by this project.

`scripts/demo.py` runs it end to end: record -> train (the real CLI) -> evaluate.
"""
