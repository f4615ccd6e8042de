"""mask2face: remove face masks from photos with a small, fast TFLite model.

Stages (one CLI verb each): data -> train -> distill -> qat -> export -> remove / bench.
Heavy modules (TensorFlow, dlib) are imported lazily inside the verbs that need them.
"""

__version__ = "0.10.0"
