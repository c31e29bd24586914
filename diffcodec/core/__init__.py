"""The diffusion core: schedules, the Gaussian diffusion (q, posteriors, p_theta, the bound), the
T = D masking diffusion, the sampling loop, and the network adapter the codecs use."""
