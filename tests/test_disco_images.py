"""DisCo-Diff on images: encoder, latent conditioning, prior, the two-stage training, files and CLI."""

import json
import warnings

import imageio.v3 as iio
import pytest
import torch

from genlab.base.image_model import load_image_model
from genlab.cli import main
from genlab.data import load_dataset
from genlab.disco.encoder import LatentConditioner, LatentEncoder
from genlab.disco.model import DisCoDiff
from genlab.disco.prior import LatentPrior, build_prior_lm
from genlab.disco.training import DisCoConfig, build_disco, train_disco, warn_collapse
from genlab.errors import GenlabError
from genlab.metrics import entropy, evaluate_samples, mutual_information

TINY = {"data": "shapes", "resolution": 16, "batch_size": 16, "num_latents": 3, "num_codes": 8, "progress": False}


def tiny_model(**overrides) -> DisCoDiff:
    return build_disco(DisCoConfig(**TINY, **overrides), channels=3, resolution=16, num_classes=4)


def shapes(count: int = 8):
    data = load_dataset("shapes", "train", 16)
    return data.images(range(count)), data.labels(range(count))


def test_encoder_gives_logits_per_latent_and_checks_the_image_size():
    encoder = LatentEncoder(in_channels=3, resolution=16, patch_size=4, hidden_size=32, depth=1, num_latents=5,
                            num_codes=7)
    assert encoder(torch.randn(2, 3, 16, 16)).shape == (2, 5, 7)
    with pytest.raises(GenlabError, match=r"encoder takes images \[B, 3, 16, 16\]"):
        encoder(torch.randn(2, 3, 32, 32))


def test_calibrated_encoder_gives_the_training_codes_at_inference():
    images, labels = shapes(200)
    model = tiny_model()
    model(images, labels)  # one training-mode call moves the running statistics a little
    with torch.no_grad():
        model.encoder.batch_norm.running_mean.add_(1.0)  # and lagging statistics move them further
        training_logits = model.encoder.train()(images)
        model.eval()
        lagging = model.encoder(images)
        model.calibrate_encoder(images, batch_size=200)
        calibrated = model.encoder(images)
    assert not torch.allclose(lagging, training_logits, atol=0.1)
    torch.testing.assert_close(calibrated, training_logits, rtol=0.01, atol=0.01)
    assert not model.encoder.training


def test_batch_norm_head_prefers_no_code_on_average():
    images, _ = shapes(64)
    encoder = tiny_model().encoder.train()
    with torch.no_grad():
        logits = encoder(images)  # [B, m, k]
    torch.testing.assert_close(logits.mean(0), torch.zeros_like(logits[0]), atol=1e-5, rtol=0)
    assert logits.std(0).mean() > 0.1  # the codes depend on the image from the first step


@pytest.mark.parametrize(("m", "k"), [(0, 8), (2, 1), (-1, 4)])
def test_too_few_latents_or_codes_are_rejected(m, k):
    with pytest.raises(GenlabError, match="--num-latents must be >= 1|--num-codes must be >= 2"):
        DisCoConfig(**{**TINY, "num_latents": m, "num_codes": k}).validate()


def test_code_ids_one_hot_codes_and_null_agree():
    torch.manual_seed(0)
    conditioner = LatentConditioner(num_latents=3, num_codes=5, dim=16, depth=1)
    ids = torch.tensor([[0, 4, 2], [1, 1, 3]])
    from_ids = conditioner(ids, 2)
    from_one_hot = conditioner(torch.nn.functional.one_hot(ids, 5).float(), 2)
    torch.testing.assert_close(from_ids, from_one_hot)
    null = conditioner(None, 2)
    torch.testing.assert_close(conditioner(torch.full((2, 3), 5), 2), null)
    torch.testing.assert_close(conditioner(ids, 2, keep=torch.tensor([1.0, 0.0]))[1], null[1])
    assert not torch.allclose(from_ids, null)
    with pytest.raises(GenlabError, match=r"code ids must lie in \[0, 5\]"):
        conditioner(torch.full((2, 3), 6), 2)


def test_latent_dropout_one_makes_the_denoiser_ignore_the_encoder():
    images, labels = shapes()
    dropped = tiny_model(latent_dropout=1.0)
    dropped(images, labels).backward()
    assert all(p.grad is None or not p.grad.any() for p in dropped.encoder.parameters())
    kept = tiny_model(latent_dropout=0.0)
    with torch.no_grad():  # make the cross-attention live so that codes matter
        for param in kept.denoiser.net.parameters():
            if not param.any():
                param.normal_(std=0.1)
    kept(images, labels).backward()
    assert any(p.grad is not None and p.grad.any() for p in kept.encoder.parameters())


def test_prior_likelihood_rises_on_a_fixed_batch():
    torch.manual_seed(0)
    prior = LatentPrior(build_prior_lm(num_latents=4, num_codes=6, num_classes=3, hidden_size=32, num_layers=1))
    codes = torch.randint(0, 6, (32, 4), generator=torch.Generator().manual_seed(1))
    labels = torch.randint(0, 3, (32,), generator=torch.Generator().manual_seed(2))
    optimizer = torch.optim.Adam(prior.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        loss = prior(codes, labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(torch.log(torch.tensor(6.0)).item(), abs=0.3)  # uniform at the start
    assert losses[-1] < losses[0] - 0.3


def test_prior_samples_valid_codes_reproducibly_and_low_temperature_is_greedy():
    torch.manual_seed(0)
    prior = LatentPrior(build_prior_lm(num_latents=4, num_codes=6, num_classes=3, hidden_size=32, num_layers=1))
    prior.eval()
    labels = torch.tensor([0, 1, 2, 0])
    draws = prior.sample(4, labels, generator=torch.Generator().manual_seed(3))
    assert draws.shape == (4, 4) and draws.dtype == torch.long and 0 <= draws.min() and draws.max() < 6
    assert torch.equal(draws, prior.sample(4, labels, generator=torch.Generator().manual_seed(3)))
    greedy = prior.sample(6, torch.zeros(6, dtype=torch.long), temperature=1e-4)
    assert (greedy == greedy[0]).all()
    with pytest.raises(GenlabError, match="temperature"):
        prior.sample(2, None, temperature=0)


def test_sampling_without_a_prior_is_a_clear_error():
    with pytest.raises(GenlabError, match="has no prior"):
        tiny_model().generate(2, torch.tensor([0, 1]), steps=2)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("disco") / "run"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a 6-step model uses few codes
        model = train_disco(DisCoConfig(**TINY, steps=6, prior_steps=6, checkpoint_every=6, run_dir=str(run_dir)))
    return run_dir, model


def test_one_run_folder_holds_both_stages_and_the_whole_model(trained):
    run_dir, model = trained
    assert (run_dir / "stage1" / "loss.png").is_file() and (run_dir / "prior" / "loss.png").is_file()
    assert {p.name for p in (run_dir / "model").iterdir()} >= {"encoder", "denoiser", "prior", "genlab.json"}
    info = json.loads((run_dir / "model" / "genlab.json").read_text())
    assert info["method"] == "disco" and info["has_prior"] and len(info["code_usage"]) == 3


def test_save_load_gives_identical_samples(trained):
    run_dir, model = trained
    loaded = DisCoDiff.from_pretrained(run_dir)
    labels = torch.tensor([0, 1, 2, 3])
    images, codes = model.generate(4, labels, steps=3, seed=5)
    images_loaded, codes_loaded = loaded.generate(4, labels, steps=3, seed=5)
    assert torch.equal(codes, codes_loaded) and torch.equal(images, images_loaded)
    assert images.shape == (4, 3, 16, 16)


def test_latent_guidance_is_cfg_on_the_codes(trained):
    _, model = trained
    labels = torch.tensor([0, 1])
    codes = torch.tensor([[0, 1, 2], [3, 4, 5]])
    plain, _ = model.generate(2, labels, codes=codes, steps=3, seed=1)
    same, _ = model.generate(2, labels, codes=codes, steps=3, seed=1, latent_scale=1.0)
    null_codes = torch.full_like(codes, model.num_codes)
    null, _ = model.generate(2, labels, codes=null_codes, steps=3, seed=1)
    only_null, _ = model.generate(2, labels, codes=codes, steps=3, seed=1, latent_scale=0.0)
    assert torch.equal(plain, same)
    torch.testing.assert_close(only_null, null)
    with pytest.raises(GenlabError, match=r"codes must have shape \[2, 3\]"):
        model.generate(2, labels, codes=codes[:, :2], steps=3)


@pytest.mark.filterwarnings("ignore:codebook collapse")
def test_resume_after_both_stages_is_a_no_op_and_resume_without_a_run_fails(trained, tmp_path):
    run_dir, model = trained
    again = train_disco(DisCoConfig(**TINY, steps=6, prior_steps=6, checkpoint_every=6, run_dir=str(run_dir),
                                    resume=True))
    labels = torch.tensor([0, 1])
    torch.testing.assert_close(again.generate(2, labels, steps=2)[0], model.generate(2, labels, steps=2)[0])
    with pytest.raises(GenlabError, match="no stage-1 checkpoint"):
        train_disco(DisCoConfig(**TINY, steps=6, run_dir=str(tmp_path / "none"), resume=True))


def test_models_of_the_other_kind_are_refused(trained, tmp_path):
    run_dir, _ = trained
    with pytest.raises(GenlabError, match="holds a disco model"):
        load_image_model(run_dir)
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "genlab.json").write_text(json.dumps({"data": "shapes"}))
    with pytest.raises(GenlabError, match="not DisCo-Diff"):
        DisCoDiff.from_pretrained(plain)


def test_collapse_warning_names_the_latents():
    with pytest.warns(UserWarning, match=r"codebook collapse.*latent 1: 25%"):
        warn_collapse(torch.tensor([0.75, 0.25]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_collapse(torch.tensor([0.5, 1.0]))


def test_cli_samples_a_disco_run_and_rejects_bad_settings(trained, tmp_path, capsys):
    run_dir, _ = trained
    out = tmp_path / "grid.png"
    main(["sample", "disco", "--model", str(run_dir), "--num", "8", "--sampling-steps", "2", "--latent-scale", "1.5",
          "--out", str(out)])
    assert iio.imread(out).shape[1] > iio.imread(out).shape[0]  # 4 class columns, 2 rows
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "disco", "--num-codes", "1", "--run-dir", str(tmp_path / "r")])
    assert exit_info.value.code == 2
    assert "Invalid value for '--num-codes': must be >= 2" in capsys.readouterr().err


def test_mutual_information_and_entropy():
    a = torch.arange(1000) % 4
    assert entropy(a) == pytest.approx(2.0)
    assert mutual_information(a, a) == pytest.approx(2.0)
    assert mutual_information(a, a % 2) == pytest.approx(1.0)
    independent = torch.randint(0, 4, (20000,), generator=torch.Generator().manual_seed(0))
    assert mutual_information(independent, torch.arange(20000) % 3) < 0.01
    with pytest.raises(GenlabError, match="integer tensors"):
        mutual_information(a.float(), a)


def test_features_of_small_images_are_compared_at_their_own_size():
    images, labels = shapes(500)
    scores = evaluate_samples(images, labels, "shapes")
    assert scores["fd"] < 1.0 and scores["accuracy"] > 0.95


def test_grouped_latents_feed_the_coarse_and_fine_attention_levels():
    model = tiny_model(size="small", latent_groups=2)
    groups = {m.group for m in model.denoiser.net.backbone.modules() if hasattr(m, "group")}
    assert groups == {0, 1}
    images, labels = shapes(4)
    assert torch.isfinite(model(images, labels))
    with pytest.raises(GenlabError, match="context_groups must be in"):
        tiny_model(latent_groups=2)  # the tiny U-Net has one attention level


def test_too_many_latent_groups_name_the_flag():
    with pytest.raises(GenlabError, match=r"--latent-groups must be in \[1, 1\].*tiny unet cross-attends in 1"):
        DisCoConfig(**TINY, latent_groups=2).validate()
