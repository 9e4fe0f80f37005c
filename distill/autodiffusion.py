"""AutoDiffusion (Li et al. 2023; spec reflow_trajectory_family.md §6): a training-free evolutionary search of the
K sampling steps of a pretrained model, exported as a sampler grid (next to BOSS's Bellman grid, distill/boss.py).

Search space: the model's own sampler grid at `fine_steps` (uniform RF time for flows, the rho-grid for EDM models;
node 0 = noise, node T = fine_steps = data). A candidate is the set of K - 1 interior nodes, kept canonical (sorted
and distinct; a crossover's duplicates are repaired with random unused nodes, so the step count never silently
drops, the official code's pitfall) and cached by that key, so permutations are evaluated once. The sampler then
runs its own solver on sigmas[(0, n_1, ..., n_{K-1}, T)].

Fitness (lower is better) on common random numbers: the same `num` noise draws for every candidate, scored against
one reference set: energy distance for points, FID in a feature space for images; the reference is a data source or,
data-free, the model's own samples at `fine_steps`.

Evolution: an initial population of `population` = the uniform path, floor(P/2) + 1 random candidates and mutations
of the uniform path; per epoch the best `top_k` so far breed `mutation_num` mutants (each gene replaced with
probability `m_prob` by an unused node) and `crossover_num` uniform crossovers, and random candidates refill the
population. The best candidate ever evaluated is returned (the uniform path is one, so it is never worse).

Reference (spec §6): ADM-G on ImageNet-64 at 4 steps, FID 17.86 with the searched steps against 138.66 with uniform
DDIM steps. Here: scripts/benchmark_trajectory_2d.py and benchmark_trajectory_mnist.py (docs/results/trajectory.md).
"""

from __future__ import annotations

import os
from typing import Callable

import numpy as np

from distill.errors import UserError


# ----- the search ---------------------------------------------------------------------------------------------------


def canonical(genes, fine_steps: int, num_steps: int, rng: np.random.Generator) -> tuple:
  """Sorted distinct interior nodes in [1, fine_steps - 1], repaired to exactly num_steps - 1 of them."""
  kept = sorted({int(g) for g in genes if 0 < int(g) < fine_steps})
  unused = np.setdiff1d(np.arange(1, fine_steps), kept)
  missing = num_steps - 1 - len(kept)
  if missing > 0:
    kept = sorted(kept + rng.choice(unused, missing, replace=False).tolist())
  return tuple(kept[: num_steps - 1])


def uniform_candidate(fine_steps: int, num_steps: int) -> tuple:
  """The uniform K-step path's interior nodes (rounded)."""
  return tuple(int(n) for n in np.round(np.linspace(0, fine_steps, num_steps + 1)).astype(int)[1:-1])


def _mutate(candidate: tuple, m_prob: float, fine_steps: int, rng) -> list:
  genes = list(candidate)
  for i in range(len(genes)):
    if rng.random() < m_prob:
      unused = np.setdiff1d(np.arange(1, fine_steps), genes)
      genes[i] = int(rng.choice(unused))
  return genes


def _crossover(a: tuple, b: tuple, rng) -> list:
  return [x if rng.random() < 0.5 else y for x, y in zip(a, b)]


def evolutionary_search(fitness: Callable[[tuple], float], fine_steps: int, num_steps: int, *, population: int = 50,
                        top_k: int = 10, mutation_num: int = 25, crossover_num: int = 10, m_prob: float = 0.1,
                        epochs: int = 10, seed: int = 0) -> dict:
  """The best K-step path for `fitness(interior nodes) -> float` (lower is better); see the module docstring.
  Returns {'nodes' (0, ..., fine_steps), 'fitness', 'uniform_nodes', 'uniform_fitness', 'history' (best per epoch,
  epoch 0 = the initial population), 'evaluations'}."""
  if not 2 <= num_steps <= fine_steps:
    raise UserError(f"a step search needs 2 <= steps <= fine_steps, got steps={num_steps}, fine_steps={fine_steps}")
  rng = np.random.default_rng(seed)
  scores: dict[tuple, float] = {}
  fix = lambda genes: canonical(genes, fine_steps, num_steps, rng)

  def evaluate(candidates):
    for c in candidates:
      if c not in scores:
        scores[c] = float(fitness(c))

  def best(k):
    return sorted(scores, key=lambda c: (scores[c], c))[:k]

  uniform = uniform_candidate(fine_steps, num_steps)
  initial = [uniform] + [fix(rng.choice(np.arange(1, fine_steps), num_steps - 1, replace=False))
                         for _ in range(population // 2 + 1)]
  while len(initial) < population:
    initial.append(fix(_mutate(uniform, 0.1, fine_steps, rng)))
  evaluate(initial)
  history = [scores[best(1)[0]]]
  for _ in range(epochs):
    parents = best(top_k)
    children = [fix(_mutate(parents[rng.integers(len(parents))], m_prob, fine_steps, rng)) for _ in range(mutation_num)]
    if len(parents) > 1:
      for _ in range(crossover_num):
        i, j = rng.choice(len(parents), 2, replace=False)
        children.append(fix(_crossover(parents[i], parents[j], rng)))
    while len(children) < population - top_k:
      children.append(fix(rng.choice(np.arange(1, fine_steps), num_steps - 1, replace=False)))
    evaluate(children)
    history.append(scores[best(1)[0]])
  winner = best(1)[0]
  return {"nodes": [0, *winner, fine_steps], "fitness": scores[winner], "uniform_nodes": [0, *uniform, fine_steps],
          "uniform_fitness": scores[uniform], "history": history, "evaluations": len(scores)}


# ----- a bundle's sampler, scored ---------------------------------------------------------------------------------


def _fitness_fn(model, fine_sigmas: np.ndarray, num: int, seed: int, reference: str, features: str):
  """fitness(interior nodes) for an exported model: its solver on the candidate grid from `num` fixed noise draws,
  scored against the reference (see the module docstring). Returns (fitness, metric name)."""
  import jax
  import jax.numpy as jnp

  from samplers.generator import default_labels
  from samplers.sampling import initial_noise, sample_keys

  generator = model.generator
  indices = np.arange(num, dtype=np.int32)
  noise = initial_noise(sample_keys(jax.random.key(seed), indices), model.shape)
  labels = jnp.asarray(default_labels(indices, generator.num_classes)) if generator.num_classes else None
  solve = jax.jit(generator.on_grid())

  def samples(nodes) -> np.ndarray:
    return np.asarray(solve(model.params, noise, labels, jnp.asarray(fine_sigmas[list(nodes)])))

  full = list(range(len(fine_sigmas)))
  if model.kind == "points":
    from distill.data import make_source
    from distill.evaluation.distances import energy_distance

    ref = samples(full) if not reference else make_source(reference, seed).sample(num, seed=seed + 1)["x"]
    return (lambda nodes: energy_distance(samples([0, *nodes, full[-1]]), ref)), "energy"

  from distill.evaluation.features import make_features
  from distill.evaluation.frechet import FeatureStats, frechet_distance
  from distill.evaluation.fid import reference_statistics
  from distill.images import to_uint8

  extractor = make_features(features or "inception")

  def stats(x) -> FeatureStats:
    return FeatureStats.from_features(extractor(to_uint8(x))["features"])

  if reference:
    ref_stats = reference_statistics(reference, extractor, num, seed)
    ref_mu, ref_sigma = ref_stats.mu, ref_stats.sigma
  else:
    own = stats(samples(full))
    ref_mu, ref_sigma = own.mean(), own.covariance()

  def fid(nodes):
    s = stats(samples([0, *nodes, full[-1]]))
    return frechet_distance(s.mean(), s.covariance(), ref_mu, ref_sigma)

  return fid, "fid"


def export_autodiffusion_sampler(bundle: str, out_json: str, out_bundle: str | None, num_steps: int, *,
                                 fine_steps: int = 100, num: int = 2000, seed: int = 0, reference: str = "",
                                 features: str = "", **search) -> dict:
  """Search the K-step grid of an exported model, write it as JSON and (optionally) as a copy of the bundle that
  samples on it with its own solver. Returns the record."""
  import samplers
  from distill.boss import save_grid
  from samplers.generator import sigma_grid

  model = samplers.load(bundle)
  fine_sigmas = sigma_grid(model.meta["sampler"], fine_steps)
  fitness, metric = _fitness_fn(model, fine_sigmas, num, seed, reference, features)
  record = evolutionary_search(fitness, fine_steps, num_steps, seed=seed, **search)
  record.update(num_steps=num_steps, fine_steps=fine_steps, num=num, seed=seed, metric=metric,
                reference=reference or f"the model at {fine_steps} steps", solver=model.meta["sampler"]["solver"],
                fine_sigmas=fine_sigmas.tolist(), sigmas=fine_sigmas[record["nodes"]].tolist(),
                bundle=os.path.abspath(bundle), checksum=model.meta["checksum"])
  sampler = {**model.meta["sampler"], "grid": "explicit", "sigmas": record["sigmas"], "steps": num_steps}
  save_grid(record, out_json, model, out_bundle, sampler, "autodiffusion_grid")
  return record
