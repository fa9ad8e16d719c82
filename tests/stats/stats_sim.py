"""Synthetic trial records of known spread: per-sample distances of two arms, crossed seeds × evaluation samples.

distance[arm, seed, sample] = mu[arm] + seed effect (sd_seed, per arm and seed) + sample effect (sd_sample, the
same image in every arm and seed) + residual (sd_resid). The population param_efficiency is 2 − mu_small/mu_ref.
"""
import numpy as np


def study(rng, *, seeds=3, samples=32, mu=(0.30, 0.26), sd_seed=0.015, sd_sample=0.05, sd_resid=0.02):
    item = rng.normal(0.0, sd_sample, samples)  # [M] shared by every arm and seed
    arms = []
    for m in mu:
        seed_fx = rng.normal(0.0, sd_seed, (seeds, 1))  # [S, 1]
        arms.append(m + seed_fx + item[None, :] + rng.normal(0.0, sd_resid, (seeds, samples)))  # [S, M]
    return arms


def true_efficiency(mu=(0.30, 0.26)):
    return 1.0 - (mu[0] - mu[1]) / mu[1]
