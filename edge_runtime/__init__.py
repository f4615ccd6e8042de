"""mask2face.edge_runtime: numpy + OpenCV + LiteRT only. Never import TensorFlow, train or compress here."""
