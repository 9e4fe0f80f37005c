"""Samplers for diffusion models and distilled students (EDM/VE convention: x = x0 + sigma * n)."""
from samplers.adaptive import rf_velocity, rk45, rk45_solver
from samplers.bellman import bellman_sigmas, bellman_steps, euler_jump_costs
from samplers.grids import edm_sigmas, explicit_sigmas, make_sigmas, schedule_sigmas, uniform_t_sigmas
from samplers.guidance import classifier_free_guidance
from samplers.ode import SOLVERS, dpm_solver_2m, euler, heun, nfe
from samplers.sampling import initial_noise, renoise, sample_keys, solve
from samplers.student import multistep_student

# --- model loading (added by the lead; keep below this line) ---
from samplers.export import ExportedSampler, export_bundle, load
