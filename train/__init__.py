"""mask2face.train"""
