"""Recipes that compose compression, training and evaluation (the study, Junk DNA, IDEA Prune)."""
