"""mask2face.compress"""
