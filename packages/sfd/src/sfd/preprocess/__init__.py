"""Preprocessing (steps 0-8): crops, rotation-aware matching, global rotations, SfM, poses."""
