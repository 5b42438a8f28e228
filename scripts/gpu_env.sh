# Sourced by the device scripts (gpu_session.sh, gpu_check.sh): the installed layout
# (setup.py maps kernels/, train/, export/ into ra_sdk) without installing, and the small
# wheels carried in .whl/ (the device image cannot reach a registry).
for d in kernels train export; do [ -e "ra_sdk/$d" ] || ln -s "../$d" "ra_sdk/$d"; done
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=$PWD:/tmp/site
else
  export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1
