"""AutoDiffusion's step search (distill/autodiffusion.py): candidates stay canonical, the evolutionary search finds
the known optimum of a toy objective, and on a bundle the exported grid samples exactly as it was scored."""

import json

import jax
import numpy as np

from distill import api
from distill.autodiffusion import canonical, evolutionary_search
from distill.evaluation.distances import energy_distance
import samplers


def test_canonical_candidates_are_sorted_distinct_and_repaired_to_k_minus_one_nodes():
  rng = np.random.default_rng(0)
  for genes in ([5, 5, 5], [0, 100, 7], [9, 3, 3, 1]):
    c = canonical(genes, 100, 4, rng)
    assert len(c) == 3 and list(c) == sorted(set(c)) and all(0 < n < 100 for n in c)
  assert canonical([30, 10, 20], 100, 4, rng) == (10, 20, 30)


def test_evolutionary_search_finds_the_known_optimum_of_a_toy_objective():
  target = (3, 11, 25, 31)
  calls = []

  def fitness(nodes):
    calls.append(nodes)
    return float(sum(abs(a - b) for a, b in zip(nodes, target)))

  for seed in range(3):
    calls.clear()
    record = evolutionary_search(fitness, 40, 5, population=30, top_k=6, mutation_num=20, crossover_num=10,
                                 m_prob=0.25, epochs=80, seed=seed)
    assert record["nodes"] == [0, *target, 40] and record["fitness"] == 0.0
    assert record["uniform_nodes"] == [0, 8, 16, 24, 32, 40]
    assert len(calls) == len(set(calls)) == record["evaluations"]  # each canonical candidate evaluated once
    assert record["evaluations"] < 39 * 38 * 37 * 36 / 24 / 40  # a search, not an enumeration of the 82251 sets
    assert all(a >= b for a, b in zip(record["history"], record["history"][1:]))  # the best never gets worse


def test_searched_grid_is_exported_and_samples_as_it_was_scored(tiny_teacher_bundle, tmp_path):
  out_json, out_bundle = str(tmp_path / "grid.json"), str(tmp_path / "bundle")
  record = api.autodiffusion(tiny_teacher_bundle, 3, out_json, out_bundle, fine_steps=16, num=256, seed=1,
                             reference="toy:moons", population=8, top_k=4, mutation_num=4, crossover_num=2, epochs=2)
  assert record["fitness"] <= record["uniform_fitness"] and json.load(open(out_json))["nodes"] == record["nodes"]
  searched = samplers.load(out_bundle)
  assert searched.nfe() == 3 and searched.meta["sampler"]["sigmas"] == record["sigmas"]
  from distill.data import make_source

  reference = make_source("toy:moons", 1).sample(256, seed=2)["x"]
  np.testing.assert_allclose(energy_distance(searched.sample(jax.random.key(1), 256), reference), record["fitness"],
                             rtol=1e-4)
