"""TaskSampler, splits and the grain pipeline on a tiny in-memory synthetic bank."""

import numpy as np
import pytest

from metaiqa_jax.data import SyntheticBank, distort
from metaiqa_jax.preprocess import InputSpec
from metaiqa_jax.data.pipeline import EpochBatches, make_batches, make_eval_loader
from metaiqa_jax.data.splits import (load_splits, lodo_split, make_splits, reference_groups,
                                     save_splits)
from metaiqa_jax.data.tasks import TaskSampler

import data_layouts

TYPES = (1, 11, 16)
IMAGE_SIZE = 16
INPUTS = InputSpec(IMAGE_SIZE, resize_to=18)  # the authors' resize-then-crop pipeline


@pytest.fixture(scope='module')
def bank():
  """5 photos x 3 types x 5 levels = 75 records, generated eagerly (32x40 px)."""
  return SyntheticBank(data_layouts.tiny_pristine(5), types=TYPES, max_side=None,
                       progress=False)


@pytest.fixture(scope='module')
def sampler(bank):
  return TaskSampler(bank, support_size=4, query_size=3, tasks_per_batch=2, inputs=INPUTS,
                     seed=7)


def test_bank_records(bank):
  meta = bank.metadata()
  assert len(bank) == 75
  rec = bank[12]  # photo-major, then type, then level
  assert (rec['ref_id'], rec['dist_type'], rec['dist_level']) == (0, 16, 3)
  assert rec['mos'] == pytest.approx(3.6323)  # KADID human mean, Brighten level 3
  assert rec['mos_norm'] == pytest.approx((3.6323 - 0.5) / 5)
  np.testing.assert_array_equal(
      rec['image'], distort(bank.pristine(0), 16, 3, seed=bank.item_seed(12)))
  assert meta['name'][12] == 'image_000_16_3'
  lazy = SyntheticBank(data_layouts.tiny_pristine(5), types=TYPES, max_side=None, lazy=True)
  np.testing.assert_array_equal(lazy[40]['image'], bank[40]['image'])


def test_bank_made_by_worker_processes_is_identical(bank):
  parallel = SyntheticBank(data_layouts.tiny_pristine(5), types=TYPES, max_side=None,
                           progress=False, workers=2)
  for i in range(len(bank)):
    np.testing.assert_array_equal(parallel[i]['image'], bank[i]['image'])


def test_sample_shapes_and_labels(sampler, bank):
  batch = sampler.sample(0)
  plan = sampler.plan(0)
  for part, n in (('support', 4), ('query', 3)):
    x, y = batch[part]
    assert x.shape == (2, n, IMAGE_SIZE, IMAGE_SIZE, 3) and x.dtype == np.float32
    assert y.shape == (2, n) and y.dtype == np.float32
    np.testing.assert_allclose(y, bank.metadata()['mos_norm'][plan[part]], rtol=1e-6)


def test_eval_sampler_gives_every_view_of_each_image(bank):
  inputs = InputSpec(IMAGE_SIZE, resize_to=0, eval_grid=2, fragments=2)
  sampler = TaskSampler(bank, support_size=2, query_size=3, tasks_per_batch=2, inputs=inputs,
                        train=False, seed=7)
  x, _ = sampler.sample(0)['query']
  assert x.shape == (2, 3, 4, IMAGE_SIZE, IMAGE_SIZE, 3)
  first = sampler.plan(0)['query'][0, 0]
  np.testing.assert_array_equal(x[0, 0], inputs.eval(bank[int(first)]['image']))


def test_tasks_are_one_type_and_reference_disjoint(sampler, bank):
  meta = bank.metadata()
  for step in range(20):
    plan = sampler.plan(step)
    assert len(set(plan['types'].tolist())) == 2  # 2 of 3 types, drawn without replacement
    for t, s, q in zip(plan['types'], plan['support'], plan['query']):
      assert set(meta['dist_type'][s]) == {t} and set(meta['dist_type'][q]) == {t}
      assert not set(meta['ref_id'][s]) & set(meta['ref_id'][q])


def test_reproducible_by_seed_and_step(sampler, bank):
  again = TaskSampler(bank, support_size=4, query_size=3, tasks_per_batch=2,
                      inputs=INPUTS, seed=7)
  a, b = sampler.sample(3), again.sample(3)
  for part in ('support', 'query'):
    np.testing.assert_array_equal(a[part][0], b[part][0])
    np.testing.assert_array_equal(a[part][1], b[part][1])
  c = sampler.sample(4)
  assert not np.array_equal(a['support'][0], c['support'][0])
  other_seed = TaskSampler(bank, support_size=4, query_size=3, tasks_per_batch=2,
                           inputs=INPUTS, seed=8)
  assert not np.array_equal(a['support'][0], other_seed.sample(3)['support'][0])
  as_path = TaskSampler(bank, support_size=4, query_size=3, tasks_per_batch=2,
                        inputs=INPUTS, seed=(7,))  # The same stream as seed=7.
  np.testing.assert_array_equal(a['support'][0], as_path.sample(3)['support'][0])
  sub_stream = TaskSampler(bank, support_size=4, query_size=3, tasks_per_batch=2,
                           inputs=INPUTS, seed=(7, 1))
  assert not np.array_equal(a['support'][0], sub_stream.sample(3)['support'][0])


def test_a_slice_of_the_tasks_is_that_slice_of_the_whole_meta_batch(bank):
  # What each process of a multi-process run loads: its own tasks, with the same crops.
  sampler = TaskSampler(bank, support_size=3, query_size=2, tasks_per_batch=4, inputs=INPUTS,
                        seed=3)
  whole = sampler.sample(5)
  halves = [sampler.sample(5, tasks=slice(0, 2)), sampler.sample(5, tasks=slice(2, 4))]
  for part in ('support', 'query'):
    for k in (0, 1):
      np.testing.assert_array_equal(
          np.concatenate([h[part][k] for h in halves]), whole[part][k])
  assert halves[0]['support'][0].shape[0] == 2


def test_eval_mode_and_type_subset(bank):
  sampler = TaskSampler(bank, types=[11], support_size=2, query_size=2, tasks_per_batch=3,
                        inputs=INPUTS, train=False)
  plan = sampler.plan(0)
  assert (plan['types'] == 11).all()  # more tasks than types: drawn with replacement
  x, _ = sampler.sample(0)['query']
  assert x.shape == (3, 2, 1, IMAGE_SIZE, IMAGE_SIZE, 3)  # one view: the resized image
  with pytest.raises(ValueError, match=r'types \[2\] have no images'):
    TaskSampler(bank, types=[2], support_size=2, query_size=2, tasks_per_batch=1,
                inputs=INPUTS)


def test_sampler_rejects_authentic_sources():
  class Authentic:
    def metadata(self):
      return {'dist_type': np.full(4, -1), 'ref_id': np.full(4, -1), 'mos_norm': np.zeros(4)}
  with pytest.raises(ValueError, match='no synthetic distortion types'):
    TaskSampler(Authentic(), support_size=1, query_size=1, tasks_per_batch=1,
                inputs=InputSpec(8))


def test_lodo_split():
  assert lodo_split(range(1, 6), 3) == ((1, 2, 4, 5), (3,))
  assert lodo_split([5, 1, 2], [2, 5]) == ((1,), (2, 5))
  with pytest.raises(ValueError, match='not among'):
    lodo_split([1, 2], 7)


def test_reference_groups_keep_known_references_and_isolate_unknown_ones():
  groups = reference_groups(np.array([3, -1, 3, 0, -1]))
  np.testing.assert_array_equal(groups, [3, -3, 3, 0, -6])
  assert groups.dtype == np.int64


def test_make_splits_by_reference(bank, tmp_path):
  meta = bank.metadata()
  splits = make_splits(bank, n_splits=4, test_fraction=0.2, val_fraction=0.2, seed=1)
  for s in splits:
    parts = [set(s[p].tolist()) for p in ('train', 'val', 'test')]
    assert sum(map(len, parts)) == len(bank) and set.union(*parts) == set(range(len(bank)))
    refs = [set(meta['ref_id'][s[p]]) for p in ('train', 'val', 'test')]
    assert [len(r) for r in refs] == [3, 1, 1]
    assert not (refs[0] & refs[1] or refs[0] & refs[2] or refs[1] & refs[2])
  again = make_splits(meta, n_splits=4, test_fraction=0.2, val_fraction=0.2, seed=1)
  for s, t in zip(splits, again):
    for p in s:
      np.testing.assert_array_equal(s[p], t[p])
  assert len({tuple(s['test']) for s in splits}) > 1
  save_splits(tmp_path / 'splits.json', splits)
  for s, t in zip(splits, load_splits(tmp_path / 'splits.json')):
    for p in s:
      np.testing.assert_array_equal(s[p], t[p])


def test_make_splits_authentic_by_image():
  meta = {'ref_id': np.full(50, -1)}
  s = make_splits(meta, n_splits=1, test_fraction=0.2, val_fraction=0.1)[0]
  assert (len(s['train']), len(s['val']), len(s['test'])) == (35, 5, 10)


def test_make_batches_epoch_and_determinism(bank):
  indices = np.arange(0, 75, 3)  # 25 records
  batches = list(make_batches(bank, indices, batch_size=4, inputs=INPUTS, train=True,
                              seed=0, num_epochs=1, drop_remainder=False))
  assert [b['image'].shape[0] for b in batches] == [4] * 6 + [1]
  assert batches[0]['image'].shape[1:] == (IMAGE_SIZE, IMAGE_SIZE, 3)
  seen = np.concatenate([b['index'] for b in batches])
  assert sorted(seen.tolist()) == indices.tolist() and seen.tolist() != indices.tolist()
  np.testing.assert_allclose(np.concatenate([b['mos_norm'] for b in batches]),
                             bank.metadata()['mos_norm'][seen], rtol=1e-6)
  endless = make_batches(bank, indices, batch_size=4, inputs=INPUTS, train=True, seed=0)
  np.testing.assert_array_equal(endless[0]['image'], batches[0]['image'])
  assert all(endless[i]['image'].shape[0] == 4 for i in range(5, 11))  # Past one epoch.
  again = make_batches(bank, indices, batch_size=4, inputs=INPUTS, train=True, seed=0,
                       num_epochs=1, drop_remainder=False)
  np.testing.assert_array_equal(again[3]['image'], batches[3]['image'])  # Random access.
  by_path = lambda path: make_batches(bank, indices, batch_size=4, inputs=INPUTS, train=True,
                                      seed=path, num_epochs=1)[0]['index'].tolist()
  assert by_path((0, 1, 2)) == by_path([0, 1, 2]) != by_path((0, 1, 3))  # A seed path.


def test_epoch_batches_from_any_step_equal_the_epochs_read_in_order(bank):
  indices = np.arange(10)
  make_epoch = lambda epoch: make_batches(bank, indices, batch_size=4, inputs=INPUTS,
                                          train=True, seed=epoch, num_epochs=1)
  in_order = [b for epoch in range(3) for b in make_epoch(epoch)]  # 2 steps per epoch.
  from_start = EpochBatches(make_epoch, steps_per_epoch=2)
  resumed = EpochBatches(make_epoch, steps_per_epoch=2)
  for step, expected in enumerate(in_order):
    np.testing.assert_array_equal(from_start(step)['image'], expected['image'])
    if step >= 3:  # A run resumed at step 3 (mid-epoch 1) reads on from there.
      np.testing.assert_array_equal(resumed(step)['index'], expected['index'])
  with pytest.raises(ValueError, match='epoch 0 has 2 batches, fewer than the 3 steps'):
    EpochBatches(make_epoch, steps_per_epoch=3)(0)


def test_eval_loader_covers_every_index_once(bank):
  indices = np.arange(10)
  batches = list(make_eval_loader(bank, indices, batch_size=4, inputs=INPUTS))
  assert [b['image'].shape for b in batches] == [(4, 1, IMAGE_SIZE, IMAGE_SIZE, 3)] * 3
  mask = np.concatenate([b['mask'] for b in batches])
  index = np.concatenate([b['index'] for b in batches])
  assert mask.tolist() == [True] * 10 + [False] * 2
  assert index[mask].tolist() == indices.tolist()


def test_process_shares_of_every_batch_make_up_the_unsharded_batches(bank):
  # Each process of a multi-process run loads its contiguous part of every batch; put side by
  # side, the parts are the batches (and crops) of one process.
  indices = np.arange(0, 75, 2)  # 38 records
  train = dict(batch_size=6, inputs=INPUTS, train=True, seed=5, num_epochs=2)
  evals = dict(batch_size=6, inputs=INPUTS)
  for make, kwargs in ((make_batches, train), (make_eval_loader, evals)):
    whole = list(make(bank, indices, **kwargs))
    parts = [list(make(bank, indices, shard=(i, 3), **kwargs)) for i in range(3)]
    assert [len(p) for p in parts] == [len(whole)] * 3
    for b, batch in enumerate(whole):
      assert parts[0][b]['index'].shape == (2,)
      for key, value in batch.items():
        np.testing.assert_array_equal(np.concatenate([p[b][key] for p in parts]), value)
  with pytest.raises(ValueError, match='divisible'):
    make_batches(bank, indices, shard=(0, 4), **train)
  with pytest.raises(ValueError, match='drop_remainder'):
    make_batches(bank, indices, shard=(0, 2), drop_remainder=False, **train)


def test_epoch_batches_with_worker_process(bank):
  make_epoch = lambda epoch: make_batches(bank, np.arange(8), batch_size=4, inputs=INPUTS,
                                          train=True, seed=3 + epoch, num_epochs=1)
  in_process = EpochBatches(make_epoch, steps_per_epoch=2)
  workers = EpochBatches(make_epoch, steps_per_epoch=2, worker_count=1)
  for step in range(4):
    a, b = in_process(step), workers(step)
    np.testing.assert_array_equal(a['index'], b['index'])
    np.testing.assert_array_equal(a['image'], b['image'])
