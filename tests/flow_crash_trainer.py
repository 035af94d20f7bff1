"""A training entry point that fails the way a real one can: it logs a little, then exits 3.

The training-crash test points ``flows.training.TRAINER`` here.
"""

import sys

if __name__ == "__main__":
    print("epoch 0 loss 4.5000 (crash trainer)", flush=True)
    print("RuntimeError: out of memory while training (crash trainer)", flush=True)
    sys.exit(3)
