# Sourced by the eval/gpu/gpu_*.sh scripts on the GPU machine, from the checkout's root: installs the
# carried wheels (.whl, see the device notes) into /tmp/site once and puts this checkout's packages
# (diffcodec, and cli/ and models/ under their installed names) on PYTHONPATH.
[ -d /tmp/site ] || python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || return 1
mkdir -p /tmp/pkgs && ln -sfn "$PWD/cli" /tmp/pkgs/diffcodec_cli && ln -sfn "$PWD/models" /tmp/pkgs/diffcodec_models
export PYTHONPATH=$PWD:/tmp/pkgs:/tmp/site PYTHONUNBUFFERED=1
