"""Training batches laid out student by student for multi-student distillation (distill/objectives/multi_student.py).

A global batch of K * b rows holds, in rows [k b, (k + 1) b), examples of student k's partition: the examples the
router sends to student k (by label, or by a teacher pair's noise for a noise router). Each partition is visited in
its own epoch-wise permutations (distill.data.epoch_permuted, key (seed, k)), so partitions of any size are sampled
evenly. With `full_set`, the batch also carries rows drawn from the whole data set (the source's own stream) under
keys 'full_<key>', for terms that must see every condition (MSD's full-set paired regression).
"""

from __future__ import annotations

import numpy as np

from distill.data import ArraySource, DataSource, epoch_permuted
from distill.stacked import Router

FULL_PREFIX = "full_"  # batch keys of the full-set rows (read by objectives/base.full_set_rows)


def example_routes(source: ArraySource, router: Router) -> np.ndarray:
  """The student of every example of `source` (by its label, or by its stored pair noise)."""
  examples = source.examples()
  if router.needs_noise:
    noise = source.extra("noise")
    if noise is None:
      raise ValueError("a noise-space partition routes training examples by their pair noise: use teacher pairs "
                       "(a pairs stage or pairs: source) as the data")
    return router.route(noise=noise)
  if "label" not in examples:
    raise ValueError("a class partition needs labelled data; the data source has no labels")
  return router.route(labels=examples["label"])


class PartitionedSource(DataSource):
  """See the module docstring. `sample` (evaluation data) is the wrapped source's, from the whole data set."""

  def __init__(self, source: ArraySource, router: Router, seed: int, full_set: bool = False):
    if not isinstance(source, ArraySource):
      raise ValueError("multi-student training partitions stored examples: use an npz:, tfds: or pairs: source")
    if source.flips:
      raise ValueError("data.flip is not supported with multi-student partitions")
    self._source, self._seed, self._full_set = source, seed, full_set
    self.num_students = router.num_students
    routes = example_routes(source, router)
    self._members = [np.flatnonzero(routes == k) for k in range(self.num_students)]
    empty = [k for k, m in enumerate(self._members) if len(m) == 0]
    if empty:
      raise ValueError(f"students {empty} have no training examples in their partition")
    self.spec, self.pair_metadata = source.spec, source.pair_metadata

  @property
  def partition_sizes(self) -> list[int]:
    return [len(m) for m in self._members]

  def _rows(self, step, batch_size, start, stop):
    if batch_size % self.num_students:
      raise ValueError(f"data.batch_size={batch_size} must be divisible by the {self.num_students} students")
    per = batch_size // self.num_students
    rows = np.arange(start, stop)
    student, i = np.divmod(rows, per)
    idx = np.empty(len(rows), np.int64)
    for k in np.unique(student):
      sel, members = student == k, self._members[k]
      idx[sel] = members[epoch_permuted(step * per + i[sel], len(members), self._seed, int(k))]
    batch = self._source.gather(idx)
    if self._full_set:
      full = self._source.rows(step, batch_size, start, stop)
      batch.update({FULL_PREFIX + name: value for name, value in full.items()})
    return batch

  def sample(self, n, seed):
    return self._source.sample(n, seed)

  def examples(self):
    return self._source.examples()
