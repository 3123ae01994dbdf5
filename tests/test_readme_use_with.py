"""The README's "Use with diffusers / transformers / peft" section, executed.

Each fenced ``python`` block of that section runs (``exec``, a fresh namespace) in a temporary working
folder in which tiny random models were first saved at the relative paths the block uses, the way the
libraries save real ones (``save_pretrained``, a finished ``genlab align`` run); then the test checks
what the block's variables hold. The section's ``genlab`` command lines are checked against each
command's ``--help`` (every flag they use is a listed one).
"""

import re
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler, StableDiffusionPipeline, StableDiffusionXLPipeline

from genlab.align.pipelines import load_pipeline_target
from genlab.align.targets import load_target
from genlab.align.trainer import apply_adapter
from genlab.base.image_model import load_image_model, save_image_model
from test_align import image_target
from test_align_export import align
from test_align_pipelines import save_tiny_sd
from test_camera_cogvideox import make_cogvideox_folder
from test_denoiser import tiny_unet
from test_growth import VOCAB, logits, tiny_llama
from test_guiders_modular import tiny_sdxl_components

README = Path(__file__).resolve().parents[1] / "README.md"
SECTION = "## Use with diffusers / transformers / peft"


def section() -> str:
    text = README.read_text(encoding="utf-8")
    assert text.count(f"\n{SECTION}\n") == 1, f"README.md needs exactly one '{SECTION}' section"
    start = text.index(f"\n{SECTION}\n") + 1
    end = text.find("\n## ", start)
    return text[start:] if end == -1 else text[start:end]


def blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```$", section(), flags=re.S | re.M)


def run_snippet(marker: str) -> dict:
    """Execute the one python block of the section that contains ``marker``; its namespace."""
    [code] = [block for block in blocks("python") if marker in block]
    namespace = {"__name__": "readme_snippet"}
    exec(compile(code, f"README.md ({marker})", "exec"), namespace)
    return namespace


# -- the local folders the snippets read, built in the working folder ----------------------------------------
def build_sdxl(root: Path) -> None:
    torch.manual_seed(0)
    StableDiffusionXLPipeline(**tiny_sdxl_components(root)).save_pretrained("models/sdxl")


def build_zero_snr(root: Path) -> None:
    tiny_unet().save_pretrained("models/zero-snr/unet")
    DDPMScheduler(rescale_betas_zero_snr=True, prediction_type="v_prediction").save_pretrained(
        "models/zero-snr/scheduler")


def build_adapters(root: Path) -> None:
    """A Stable Diffusion folder and a genlab image run, and a finished (one-step) LoRA align run of each."""
    Path("models").mkdir(exist_ok=True)
    save_tiny_sd(root).rename("models/sd")
    align(load_pipeline_target("models/sd", guidance_scale=2.0, device="cpu"), "runs/align/sd", prompts="a cat|dog")
    save_image_model(image_target().denoiser, Path("runs/train/digits/model"), data="digits")
    align(load_target("runs/train/digits", device="cpu"), "runs/align/digits")


def build_llama(root: Path) -> None:
    tiny_llama().save_pretrained("models/tiny-llama")


def build_cogvideox(root: Path) -> None:
    make_cogvideox_folder(Path("models/cogvideox"), text=True)


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    """An empty working folder; returns a scratch folder outside it for builders' side files."""
    (tmp_path / "work").mkdir()
    (tmp_path / "scratch").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    return tmp_path / "scratch"


# -- the snippets ----------------------------------------------------------------------------------------------
def test_section_holds_the_expected_python_blocks():
    markers = ["StableDiffusionXLAutoBlocks", "DiffusersDenoiser", "load_lora_weights", "genlab.growth",
               "CogVideoXDenoiser"]
    found = blocks("python")
    assert len(found) == len(markers)
    assert all(sum(marker in block for block in found) == 1 for marker in markers)


def test_icg_and_tsg_guiders_in_the_sdxl_modular_pipeline_loaded_from_a_local_folder(workdir):
    build_sdxl(workdir)
    torch.manual_seed(0)
    ns = run_snippet("StableDiffusionXLAutoBlocks")
    pipe, images, both = ns["pipe"], ns["images"], ns["both"]
    assert type(pipe.unet).__name__ == "UNet2DConditionModel" and type(pipe.guider).__name__ == "ICGTSGGuidance"
    for result in (images, both):
        assert isinstance(result, list) and len(result) == 1 and result[0].size == (16, 16)
    assert not np.array_equal(np.asarray(images[0]), np.asarray(both[0]))


def test_a_zero_snr_diffusers_unet_samples_finite_with_genlabs_heun_sampler(workdir):
    build_zero_snr(workdir)
    ns = run_snippet("DiffusersDenoiser")
    assert ns["denoiser"].sigma_max == pytest.approx(2**12, rel=1e-4)
    assert ns["images"].shape == (4, 1, 8, 8) and torch.isfinite(ns["images"]).all()


def sd_unet_output(unet) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 8, 8, generator=generator)
    text = torch.randn(1, 8, unet.config.cross_attention_dim, generator=generator)
    with torch.no_grad():
        return unet(x, torch.tensor([500]), encoder_hidden_states=text).sample


def class_output(denoiser) -> torch.Tensor:
    x = torch.randn(1, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return denoiser(x, torch.tensor([2.0]), class_labels=torch.tensor([1]))


def test_align_adapters_load_with_diffusers_and_peft(workdir):
    build_adapters(workdir)
    adapter = Path("runs/align/sd/adapter")
    assert {"adapter_config.json", "adapter_model.safetensors", "pytorch_lora_weights.safetensors"} <= {
        file.name for file in adapter.iterdir()}
    ns = run_snippet("load_lora_weights")
    assert ns["image"].size == (16, 16)
    base = sd_unet_output(StableDiffusionPipeline.from_pretrained("models/sd").unet)
    by_diffusers, by_peft = sd_unet_output(ns["pipe"].unet), sd_unet_output(ns["unet"])
    assert (by_diffusers - base).abs().max() > 1e-4
    torch.testing.assert_close(by_peft, by_diffusers, rtol=0, atol=1e-5)
    reference = apply_adapter(load_target("runs/train/digits", device="cpu"), "runs/align/digits").denoiser
    plain, _ = load_image_model("runs/train/digits")
    adapted = class_output(ns["denoiser"])
    assert (adapted - class_output(plain)).abs().max() > 1e-4
    torch.testing.assert_close(adapted, class_output(reference), rtol=0, atol=1e-6)
    assert ns["samples"].shape == (3, 1, 8, 8) and torch.isfinite(ns["samples"]).all()


def test_grown_transformers_models_save_and_reload_with_their_logits(workdir):
    build_llama(workdir)
    ns = run_snippet("genlab.growth")
    ids = torch.randint(0, VOCAB, (2, 12), generator=torch.Generator().manual_seed(3))
    small, big, grown = ns["small"], ns["big"], ns["grown"]
    assert big.config.num_hidden_layers == 2 * small.config.num_hidden_layers
    assert type(ns["plain"]) is type(big) is type(small)
    expected = logits(grown.model, ids)
    assert torch.equal(logits(ns["plain"], ids), expected)
    assert torch.equal(logits(ns["resumed"].model, ids), expected)
    assert ns["resumed"].ramp.done == 1 and ns["resumed"].ramp.steps == 500


def test_a_camera_controlnet_on_a_local_cogvideox_folder_saves_and_reloads(workdir):
    from genlab.camera import load_camera_model
    from genlab.camera.cogvideox import CogVideoXDenoiser

    build_cogvideox(workdir)
    ns = run_snippet("CogVideoXDenoiser")
    model = ns["model"].eval()
    assert not any(parameter.requires_grad for parameter in model.base.parameters())
    assert all(parameter.requires_grad for parameter in model.controlnet.parameters())
    loaded = load_camera_model("runs/cogvideox-camera")
    assert isinstance(loaded.base, CogVideoXDenoiser) and loaded.variant == "controlnet"
    torch.manual_seed(1)
    x, sigma = torch.randn(1, 3, 4, 8, 8), torch.tensor([2.0])
    cond = {"plucker": torch.randn(1, 3, 6, 8, 8), "encoder_hidden_states": torch.randn(1, 5, 12)}
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, sigma, **cond), model(x, sigma, **cond), rtol=0, atol=0)


def test_the_sections_command_lines_use_listed_flags(run_cli):
    lines = [line for block in blocks("bash") for line in block.splitlines() if line.startswith("genlab ")]
    assert any(line.startswith("genlab sample camera ") for line in lines)
    for line in lines:
        words = shlex.split(line, comments=True)[1:]
        command = words[:next(i for i, word in enumerate(words) if word.startswith("-"))]
        code, out, err = run_cli(*command, "--help")
        assert code == 0, err
        listed = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", out))
        assert {word for word in words if word.startswith("--")} <= listed, line
