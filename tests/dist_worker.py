"""Launched twice by tests/test_distributed.py (torchrun / accelerate launch): one training run."""

import json
import sys

import tunelab

if __name__ == "__main__":
    cfg = json.loads(open(sys.argv[1]).read())
    res = tunelab.train(cfg)
    print("ACCURACY", res.metrics["accuracy"])
