"""DisCo-Diff: continuous diffusion with learned discrete latents (Xu et al., ICML 2024).

So far: Gumbel-softmax codes (:mod:`.codes`) and the paper's 2-D toy (:mod:`.toy`); the image
model with its autoregressive prior is still to come.
"""
