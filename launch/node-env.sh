# The environment of every worker a launch file starts (sourced by workers.sh and slurm-multinode.sbatch).
# A value already set in the caller's environment wins.
#
# Compute nodes often have no internet: offline, the hub is never asked (no timeouts per model
# load); models and tokenizers come from HF_HOME. Point HF_HOME at a shared cache filled once from
# a login node (`HF_HOME=/shared/hf madx fetch ...` or `huggingface-cli download ...`); read-only
# is fine when offline:  export HF_HOME=/shared/hf
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1}
export TOKENIZERS_PARALLELISM=${TOKENIZERS_PARALLELISM:-false}
# Triton and Inductor compile caches on the node's own disk: their default is under $HOME, often NFS,
# where hundreds of workers writing small files at once stall each other (and a stale lock there
# hangs every node). MADX_NODE_CACHE names the folder (default: $TMPDIR or /tmp, per user).
MADX_NODE_CACHE=${MADX_NODE_CACHE:-${TMPDIR:-/tmp}/madx-${USER:-$(id -u)}}
export TRITON_CACHE_DIR=${TRITON_CACHE_DIR:-$MADX_NODE_CACHE/triton}
export TORCHINDUCTOR_CACHE_DIR=${TORCHINDUCTOR_CACHE_DIR:-$MADX_NODE_CACHE/inductor}
mkdir -p "$TRITON_CACHE_DIR" "$TORCHINDUCTOR_CACHE_DIR"
