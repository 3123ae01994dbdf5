"""What a `genlab align` run exports, loaded the ways users load it: diffusers' ``pipe.load_lora_weights``,
peft's ``PeftModel.from_pretrained``, genlab's ``apply_adapter`` and ``genlab sample image --adapter``
(tiny random models; every loader must give the outputs of genlab's own path)."""

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline, UNet3DConditionModel
from peft import PeftModel
from PIL import Image
from safetensors.torch import save_file

from genlab.align.config import AlignConfig
from genlab.align.lora import add_lora, trainable_state
from genlab.align.pipelines import load_pipeline_target
from genlab.align.targets import load_target
from genlab.align.trainer import AlignmentRun, AlignResult, apply_adapter
from genlab.base.image_model import balanced_labels, generate_images, save_image_model
from genlab.core.images import save_image_grid
from test_align import Brightness, image_target, video_target
from test_align_pipelines import save_tiny_sd, save_tiny_video

PROMPT = "a cat"
PEFT_FILES = {"adapter_config.json", "adapter_model.safetensors", "align.json"}


def align(target, run_dir, **overrides) -> AlignResult:
    """One quick LoRA run towards brightness; alpha 4 on rank 2 is a scale of 2, which loaders must keep."""
    settings = dict(steps=1, batch_size=2, sampling_steps=2, lora_rank=2, lora_alpha=4.0, lr=0.05,
                    run_dir=str(run_dir), progress=False)
    return AlignmentRun(target, Brightness(), AlignConfig(**{**settings, **overrides})).fit()


def denoised(target) -> torch.Tensor:
    """``x0̂`` of the target at a fixed state, noise level and condition."""
    x = 2 * torch.randn(target.state_shape(1), generator=torch.Generator().manual_seed(0))
    prompts, labels = ([PROMPT], None) if target.condition == "prompts" else (None, torch.tensor([1]))
    cond = target.encode_condition(prompts, labels) if target.condition else {}
    with torch.no_grad():
        return target.denoise(x, torch.tensor([2.0]), cond)


def files(folder) -> set[str]:
    return {p.name for p in folder.iterdir()}


# -- Stable Diffusion: diffusers' loader, peft's, genlab's ---------------------------------------------------
def sd_pipeline(folder) -> StableDiffusionPipeline:
    return StableDiffusionPipeline.from_pretrained(folder, safety_checker=None, requires_safety_checker=False)


def sd_images(pipe) -> torch.Tensor:
    """Images ``[1, 3, 16, 16]`` of the diffusers pipeline loop: fixed prompt and latents, 2 DDIM steps, CFG 2."""
    latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    return pipe(PROMPT, latents=latents, num_inference_steps=2, guidance_scale=2.0, output_type="pt").images


def test_a_stable_diffusion_adapter_loads_with_load_lora_weights_and_with_peft(tmp_path):
    folder = save_tiny_sd(tmp_path)
    result = align(load_pipeline_target(folder, guidance_scale=2.0, device="cpu"), tmp_path / "run",
                   prompts="a cat|dog")
    adapter = result.run_dir / "adapter"
    assert files(adapter) >= PEFT_FILES | {"pytorch_lora_weights.safetensors"}
    assert "pipe.load_lora_weights(DIR)" in result.adapter_note
    expected = sd_images(apply_adapter(load_pipeline_target(folder, device="cpu"), result.run_dir).pipe)
    by_diffusers = sd_pipeline(folder)
    by_diffusers.load_lora_weights(adapter)
    by_peft = sd_pipeline(folder)
    PeftModel.from_pretrained(by_peft.unet, adapter)  # adapts by_peft.unet in place
    assert (sd_images(sd_pipeline(folder)) - expected).abs().max() > 1e-3
    torch.testing.assert_close(sd_images(by_diffusers), expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(sd_images(by_peft), expected, rtol=0, atol=1e-5)


# -- text-to-video: diffusers has no LoRA loader for UNet3DConditionModel; peft's works ---------------------
def test_a_text_to_video_adapter_is_peft_only_and_loads_with_peft(tmp_path):
    folder = save_tiny_video(tmp_path)

    def target():
        return load_pipeline_target(folder, guidance_scale=1.0, num_frames=2, device="cpu")

    result = align(target(), tmp_path / "run", prompts=PROMPT)
    adapter = result.run_dir / "adapter"
    assert files(adapter) >= PEFT_FILES and "pytorch_lora_weights.safetensors" not in files(adapter)
    # what pipe.load_lora_weights calls on the UNet (diffusers 0.42.1: AttributeError for TextToVideoSDPipeline)
    assert not hasattr(UNet3DConditionModel, "load_lora_adapter")
    assert ("diffusers has no LoRA loader for TextToVideoSDPipeline's UNet3DConditionModel, so "
            "pipe.load_lora_weights cannot load it") in result.adapter_note
    expected = denoised(apply_adapter(target(), result.run_dir))
    by_peft = target()
    PeftModel.from_pretrained(by_peft.pipe.unet, adapter)
    assert (denoised(target()) - expected).abs().max() > 1e-4
    torch.testing.assert_close(denoised(by_peft), expected, rtol=0, atol=1e-6)


# -- genlab's nets: the peft folder, and the bare-key weights of runs before the peft export --------------------
@pytest.mark.parametrize("make_target", [image_target, video_target])
def test_genlab_adapters_load_with_peft_and_in_the_old_format(make_target, tmp_path):
    trained = make_target()
    result = align(trained, tmp_path / "run")
    adapter = result.run_dir / "adapter"
    assert files(adapter) >= PEFT_FILES and "PeftModel.from_pretrained(denoiser.net, DIR)" in result.adapter_note
    expected = denoised(apply_adapter(make_target(), result.run_dir))
    torch.testing.assert_close(denoised(trained), expected, rtol=0, atol=1e-6)
    assert (denoised(make_target()) - expected).abs().max() > 1e-4
    by_peft = make_target()
    PeftModel.from_pretrained(by_peft.module, adapter)
    torch.testing.assert_close(denoised(by_peft), expected, rtol=0, atol=1e-6)
    old = tmp_path / "old" / "adapter"  # what runs wrote before: bare peft keys beside align.json
    old.mkdir(parents=True)
    (old / "align.json").write_text((adapter / "align.json").read_text())
    save_file({k: v.contiguous() for k, v in trainable_state(trained.module, lora=True).items()},
              str(old / "weights.safetensors"))
    torch.testing.assert_close(denoised(apply_adapter(make_target(), old.parent)), expected, rtol=0, atol=1e-6)


def test_full_weight_runs_export_all_weights(tmp_path):
    trained = image_target()
    result = align(trained, tmp_path / "run", lora_rank=0)
    assert files(result.run_dir / "adapter") == {"align.json", "weights.safetensors"}
    torch.testing.assert_close(denoised(apply_adapter(image_target(), result.run_dir)), denoised(trained))


# -- genlab sample image --adapter ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    """A saved tiny class-conditional image model (3 classes, 8 px) and a finished LoRA run on it."""
    root = tmp_path_factory.mktemp("sample")
    save_image_model(image_target().denoiser, root / "model", data="digits")
    result = align(load_target(str(root / "model"), device="cpu"), root / "run")
    return root / "model", result.run_dir


def test_sample_image_with_an_adapter_samples_the_aligned_model(image_run, tmp_path, run_cli):
    model, run = image_run
    sample = ("sample", "image", "--model", str(model), "--num", "3", "--sampling-steps", "3")
    for name, extra in (("base", ()), ("aligned", ("--adapter", str(run / "adapter")))):
        code, _, err = run_cli(*sample, *extra, "--out", str(tmp_path / f"{name}.png"))
        assert code == 0, err
    target = apply_adapter(load_target(str(model), device="cpu"), run)
    save_image_grid(generate_images(target.denoiser, 3, balanced_labels(3, 3), steps=3), tmp_path / "library.png",
                    columns=3)
    pixels = {name: np.asarray(Image.open(tmp_path / f"{name}.png")) for name in ("base", "aligned", "library")}
    assert np.array_equal(pixels["aligned"], pixels["library"])
    assert not np.array_equal(pixels["aligned"], pixels["base"])


def test_sample_image_adapter_errors_are_one_line(image_run, tmp_path, run_cli):
    model, _ = image_run
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "adapter_config.json").write_text("{")
    add_lora(video_target().module, 2, ("qkv", "proj")).save_pretrained(str(tmp_path / "video"))
    cases = {tmp_path / "missing": "holds no alignment adapter", broken: "holds no readable peft adapter",
             tmp_path / "video": "does not fit this ImageUNet"}
    for adapter, message in cases.items():
        code, _, err = run_cli("sample", "image", "--model", str(model), "--num", "1", "--sampling-steps", "2",
                               "--adapter", str(adapter), "--out", str(tmp_path / "x.png"))
        assert code == 2 and err.startswith("genlab: error: ") and err.count("\n") == 1 and message in err, err
