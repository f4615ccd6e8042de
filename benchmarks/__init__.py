"""mask2face.benchmarks"""
