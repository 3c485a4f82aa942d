"""CoCo-INR's networks, module names as the authors' checkpoints."""
