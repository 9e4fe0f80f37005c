"""The FID pipeline end to end on tiny data: feature classifier, sharded feature extraction, statistics files and
their metadata, `distill fid` / `distill train-classifier` / `distill fid stats`, in-training FID with the best
checkpoint. The metric mathematics is tested in test_fid_metrics.py, the Inception network in test_inception.py."""

import json
import os

import jax
import ml_collections
import numpy as np
import pytest

import samplers
from configs import tiny
from distill import api, cli, run
from distill.errors import UserError
from distill.evaluation import classifier as classifier_lib, features as features_lib, fid
from samplers.generator import Generator

NUM_CLASSES = 4


def quadrant_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """8x8 grey images whose label (0..3) is the bright quadrant, plus pixel noise: easy but not trivial."""
  rng = np.random.default_rng(seed)
  labels = (np.arange(n) % NUM_CLASSES).astype(np.int64)
  images = rng.integers(0, 80, (n, 8, 8), dtype=np.int64)
  for i, c in enumerate(labels):
    r, q = divmod(int(c), 2)
    images[i, 4 * r:4 * r + 4, 4 * q:4 * q + 4] += 150
  return images.astype(np.uint8), labels


@pytest.fixture(scope="module")
def data_npz(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("data") / "quadrants.npz")
  images, labels = quadrant_images(256, 0)
  np.savez(path, images=images, labels=labels)
  return path


@pytest.fixture(scope="module")
def classifier_dir(data_npz, tmp_path_factory):
  out = str(tmp_path_factory.mktemp("clf") / "classifier")
  classifier_lib.train_classifier(f"npz:{data_npz}", out, steps=60, batch_size=32, holdout=64, log=lambda s: None)
  return out


def test_classifier_learns_and_round_trips(classifier_dir, data_npz):
  model, meta = classifier_lib.load_classifier(classifier_dir)
  assert meta["heldout"]["num"] == 64 and meta["heldout"]["accuracy"] >= 0.9
  assert meta["model"] == {"input_shape": [8, 8, 1], "num_classes": NUM_CLASSES}
  images, labels = quadrant_images(64, 1)  # fresh images
  assert np.mean(classifier_lib.predict(model, images[..., None]) == labels) >= 0.9


def test_classifier_files_are_checked(classifier_dir, tmp_path):
  with pytest.raises(UserError, match="train-classifier"):
    classifier_lib.load_classifier(str(tmp_path / "missing"))
  broken = tmp_path / "broken"
  broken.mkdir()
  (broken / classifier_lib.META_FILE).write_text(open(os.path.join(classifier_dir, classifier_lib.META_FILE)).read())
  with np.load(os.path.join(classifier_dir, classifier_lib.PARAMS_FILE)) as f:
    arrays = {k: f[k] for k in f.files}
  first = sorted(arrays)[0]
  arrays[first] = arrays[first] + 1.0
  np.savez(broken / classifier_lib.PARAMS_FILE, **arrays)
  with pytest.raises(UserError, match="checksum"):
    classifier_lib.load_classifier(str(broken))
  with pytest.raises(UserError, match="not a labelled image source"):
    classifier_lib.train_classifier("toy:moons", str(tmp_path / "c"), steps=1)


def test_classifier_features_identical_on_1_and_8_devices(classifier_dir):
  images = quadrant_images(13, 2)[0][..., None]  # 13 rows: the last batch is padded on 8 devices
  one = features_lib.classifier_features(classifier_dir, batch_size=5,
                                         mesh=jax.make_mesh((1,), ("batch",), devices=jax.devices()[:1]))
  eight = features_lib.classifier_features(classifier_dir, batch_size=8)
  a, b = one(images), eight(images)
  assert a["features"].shape == (13, 128) and a["logits"].shape == (13, NUM_CLASSES)
  np.testing.assert_allclose(a["features"], b["features"], rtol=1e-6, atol=1e-6)
  with pytest.raises(UserError, match=r"need images of shape \(8, 8, 1\)"):
    one(np.zeros((2, 9, 9, 1), np.uint8))
  with pytest.raises(UserError, match="uint8"):
    one(np.zeros((2, 8, 8, 1), np.float32))


def test_statistics_stream_equals_numpy_and_round_trips(classifier_dir, data_npz, tmp_path):
  extractor = features_lib.classifier_features(classifier_dir)
  stats = fid.compute_statistics(extractor, fid.source_stream(f"npz:{data_npz}", chunk=50), "quadrants", keep=100)
  with np.load(data_npz) as f:  # the same 50-image chunks (other batch shapes may round differently)
    feats = np.concatenate([extractor(f["images"][i:i + 50, ..., None])["features"] for i in range(0, 256, 50)])
  feats = feats.astype(np.float64)
  np.testing.assert_allclose(stats.mu, feats.mean(0), rtol=1e-10, atol=1e-12)
  np.testing.assert_allclose(stats.sigma, np.cov(feats, rowvar=False), rtol=1e-9, atol=1e-10)
  assert stats.n == 256 and stats.features.shape == (100, 128) and stats.class_counts.sum() == 256
  assert stats.metadata["quantization"] == "edm-round-uint8" and stats.metadata["dim"] == 128

  path = str(tmp_path / "stats.npz")
  fid.save_statistics(path, stats)
  loaded = fid.load_statistics(path)
  np.testing.assert_array_equal(loaded.sigma, stats.sigma)
  assert loaded.metadata == json.loads(json.dumps(stats.metadata)) and loaded.n == 256
  same = fid.compare(stats, loaded)
  assert abs(same["fid"]) < 1e-6 and same["precision"] == same["recall"] == 1.0

  other = dict(stats.metadata, weights_sha256="0" * 64, resize="bilinear-299-no-antialias")
  with pytest.raises(UserError, match="weights_sha256.*resize"):
    fid.check_compatible(stats.metadata, other)
  json.dump(other, open(str(tmp_path / "stats.json"), "w"))
  with pytest.raises(UserError, match="not comparable"):
    fid.reference_statistics(path, extractor)
  os.remove(str(tmp_path / "stats.json"))
  with pytest.raises(UserError, match="sidecar"):
    fid.load_statistics(path)


def test_class_accuracy_and_histogram(classifier_dir):
  extractor = features_lib.classifier_features(classifier_dir)
  images, labels = quadrant_images(40, 3)
  stats = fid.compute_statistics(extractor, [(images[..., None], labels)], "labelled")
  metrics = fid.compare(stats, stats)
  assert metrics["class_histogram"] == [10, 10, 10, 10] and metrics["class_accuracy"] >= 0.9
  wrong = fid.compute_statistics(extractor, [(images[..., None], (labels + 1) % NUM_CLASSES)], "mislabelled")
  assert fid.compare(wrong, stats)["class_accuracy"] <= 0.1


def image_config(npz_path: str) -> ml_collections.ConfigDict:
  c = tiny.get_config()
  c.data.source = f"npz:{npz_path}"
  c.data.batch_size = 16
  c.model = ml_collections.ConfigDict(dict(name="unet", channels=(8, 16), num_blocks=1, attn_resolutions=(),
                                           dropout=0.0, noise_scale=1.0, conditional=True))
  c.train.update(num_steps=4, ckpt_every=2, log_every=2)
  c.sampler.steps = 2
  # One device: compiling the U-Net's step for 8 fake CPU devices dominates the time (in-training evaluation on the
  # 8-device mesh: tests/test_best_by_energy.py).
  c.mesh.data = 1
  return c


@pytest.fixture(scope="module")
def trained(data_npz, classifier_dir, tmp_path_factory):
  """A 4-step conditional U-Net run (one device) with in-training FID every 2 steps, and its exported bundle."""
  workdir = str(tmp_path_factory.mktemp("run") / "w")
  config = image_config(data_npz)
  config.eval.update(fid_every=2, fid_features=f"classifier:{classifier_dir}", fid_num=12)
  run.train(config, workdir)
  return workdir, api.export(workdir)


def test_in_training_fid_logs_and_keeps_the_best(trained, tmp_path):
  workdir, _ = trained
  rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
  fids = {r["step"]: r["eval/fid"] for r in rows if "eval/fid" in r}
  assert sorted(fids) == [2, 4] and all(np.isfinite(v) and v >= 0 for v in fids.values())
  best = json.load(open(os.path.join(workdir, "best.json")))
  assert best["step"] == min(fids, key=fids.get) and best["value"] == pytest.approx(fids[best["step"]])
  assert best["metric"] == "fid"
  bundle = api.export(workdir, str(tmp_path / "best"), best=True)
  assert samplers.load(bundle).meta["provenance"]["step"] == best["step"]


def test_training_fid_matches_the_offline_pipeline(trained, classifier_dir, data_npz):
  """The in-training number (eigh path) equals `fid.compare` (scipy path) on the same samples."""
  workdir, bundle = trained
  sampler = samplers.load(bundle)
  training = fid.TrainingFID(f"classifier:{classifier_dir}", f"npz:{data_npz}", 12, None)
  generator = Generator(sampler.network, sampler.shape, sampler.meta["sampler"])
  online = training(generator, sampler.params, jax.random.key(5))
  generated = fid.compute_statistics(training.extractor, fid.sampler_stream(sampler, 12, seed=5), "offline")
  offline = fid.compare(generated, training.reference)
  assert online["fid"] == pytest.approx(offline["fid"], rel=1e-6)


def test_sampler_stream_does_not_depend_on_chunking(trained):
  sampler = samplers.load(trained[1])
  whole = list(fid.sampler_stream(sampler, 11, chunk=11))
  parts = list(fid.sampler_stream(sampler, 11, chunk=4))
  assert [len(p[0]) for p in parts] == [4, 4, 3]
  np.testing.assert_array_equal(np.concatenate([p[1] for p in parts]), whole[0][1])
  np.testing.assert_array_equal(whole[0][1], np.arange(11) % NUM_CLASSES)
  diff = np.abs(np.concatenate([p[0] for p in parts]).astype(int) - whole[0][0].astype(int))
  assert diff.max() <= 1  # uint8 rounding of float samples equal up to float rounding (see samplers/generator.py)
  assert whole[0][0].dtype == np.uint8 and whole[0][0].shape == (11, 8, 8, 1)


def test_fid_commands(trained, classifier_dir, data_npz, tmp_path, capsys):
  _, bundle = trained
  features = f"--features=classifier:{classifier_dir}"
  out_json, saved = str(tmp_path / "fid.json"), str(tmp_path / "samples.npz")
  assert cli.main(["fid", f"--sampler={bundle}", features, f"--ref=npz:{data_npz}", "--num=13", "--steps=2",
                   f"--json={out_json}", f"--save_samples={saved}"]) == 0
  printed = capsys.readouterr().out
  metrics = json.load(open(out_json))
  for key in ("fid", "precision", "recall", "kid", "class_accuracy", "class_histogram"):
    assert key in metrics and f"{key}:" in printed
  assert f"± {metrics['kid_std']:.2g}" in printed
  assert metrics["num_generated"] == 13 and metrics["num_reference"] == 256 and metrics["nfe"] == 2

  # Stored samples give exactly the same numbers; a statistics file as --ref gives the same FID.
  assert cli.main(["fid", f"--samples={saved}", features, f"--ref=npz:{data_npz}", f"--json={out_json}"]) == 0
  again = json.load(open(out_json))
  for key in ("fid", "precision", "recall", "kid", "class_accuracy"):
    assert again[key] == pytest.approx(metrics[key], rel=1e-9)
  stats = str(tmp_path / "ref.npz")
  assert cli.main(["fid", "stats", f"--data=npz:{data_npz}", f"--out={stats}", features]) == 0
  assert json.load(open(str(tmp_path / "ref.json")))["count"] == 256
  assert cli.main(["fid", f"--samples={saved}", features, f"--ref={stats}", f"--json={out_json}"]) == 0
  assert json.load(open(out_json))["fid"] == pytest.approx(metrics["fid"], rel=1e-9)
  capsys.readouterr()

  # A PNG folder for --save_samples; the default reference is the data the model was trained on.
  folder = str(tmp_path / "pngs")
  assert cli.main(["fid", f"--sampler={bundle}", features, "--num=3", "--steps=1", f"--save_samples={folder}"]) == 0
  assert sorted(os.listdir(folder)) == ["000000.png", "000001.png", "000002.png"]


def test_fid_command_errors_are_one_line(classifier_dir, data_npz, tmp_path, capsys, monkeypatch):
  monkeypatch.setenv("DISTILL_INCEPTION_WEIGHTS", str(tmp_path / "nowhere.npz"))
  samples = str(tmp_path / "s.npz")
  np.savez(samples, samples=np.zeros((4, 8, 8, 1), np.uint8))
  cases = [
      (["fid", f"--samples={tmp_path}/none.npz", "--ref=npz:x.npz"], "samples file not found"),
      (["fid", "--num=3"], "exactly one of --sampler, --workdir and --samples"),
      (["fid", f"--samples={samples}", "--features=resnet"], "unknown feature extractor"),
      (["fid", f"--samples={samples}"], "pt_inception-2015-12-05-6726825d.pth"),
      (["fid", f"--samples={samples}", f"--features=classifier:{classifier_dir}", "--ref=toy:moons"],
       "holds points, not images"),
      (["fid", "convert-weights", f"--pth={tmp_path}/none.pth"], "none.pth"),
      (["fid", "stats", f"--data=npz:{data_npz}", f"--out={tmp_path}/s.npz", "--features=classifier:/nope"],
       "train-classifier"),
      (["train-classifier", "--data=toy:moons", f"--out={tmp_path}/c"], "not a labelled image source"),
  ]
  for argv, message in cases:
    assert cli.main(argv) == 1, argv
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err, (argv, err)


def test_train_classifier_command(data_npz, tmp_path, capsys):
  out = str(tmp_path / "clf")
  assert cli.main(["train-classifier", f"--data=npz:{data_npz}", f"--out={out}", "--steps=5", "--batch_size=16",
                   "--holdout=32"]) == 0
  printed = capsys.readouterr().out
  meta = json.load(open(os.path.join(out, classifier_lib.META_FILE)))
  assert f"held-out accuracy {meta['heldout']['accuracy']:.4f}" in printed and meta["train"]["steps"] == 5



def test_eval_reports_fid_against_nfe_and_step(trained, classifier_dir, tmp_path, capsys):
  workdir, _ = trained
  plots, out_json = str(tmp_path / "plots"), str(tmp_path / "eval.json")
  assert cli.main(["eval", f"--workdir={workdir}", f"--features=classifier:{classifier_dir}", "--steps=1,2",
                   "--num=12", f"--plots={plots}", f"--json={out_json}"]) == 0
  printed = capsys.readouterr().out
  rows = json.load(open(out_json))
  assert [r["nfe"] for r in rows] == [1, 2] and all(np.isfinite(r["fid"]) for r in rows)
  assert "| steps | solver | nfe | seconds | fid | precision | recall | kid | class_accuracy |" in printed
  assert {"fid_vs_nfe.png", "fid_vs_step.png"} <= set(os.listdir(plots))
