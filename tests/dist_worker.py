"""Launched twice by tests/test_distributed.py (torchrun / accelerate launch): one training run."""

import json
import sys

import tunelab

if __name__ == "__main__":
    with open(sys.argv[1]) as fh:
        cfg = json.load(fh)
    res = tunelab.train(cfg)
    print("ACCURACY", res.metrics["accuracy"])
