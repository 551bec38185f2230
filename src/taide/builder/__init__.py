"""`taide build`: one recipe from raw corpus to an evaluated, exported model and its model card.

- ``recipe``: the YAML recipe and the shipped samples it can name
- ``plan``: parameters, FLOPs per token and GPU-hours before anything runs (``--dry-run``)
- ``stages``: each stage calls the component that owns the work (data, train, export, eval)
- ``runner``: manifests, skip / rerun / resume
- ``card``: the model card, from the build's own artifacts
"""

from taide.builder.recipe import BuildError, Recipe, load_build_recipe
from taide.builder.runner import BuildConfig, BuildResult, make_plan, run_build

__all__ = ["BuildConfig", "BuildError", "BuildResult", "Recipe", "load_build_recipe", "make_plan", "run_build"]
