r"""Trains MaskGAN: MaskVAE pretraining -> DMN -> Editing Behavior Simulated Training.

    python main.py --config=configs/ebst.py --workdir=DIR
    python main.py --config=configs/ebst.py:quickstart --workdir=DIR
    python main.py --config=configs/ebst.py --workdir=DIR --config.data.global_batch_size=32

Multi-host: every process runs the same command; JAX finds the cluster itself on TPU pods and
SLURM, or take --coordinator_address, --num_processes and --process_id.
"""

from absl import app, flags, logging
from ml_collections import config_flags

import jax

from maskgan_jax import runtime, train

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Directory for checkpoints, TensorBoard logs, image grids and data.")
flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (multi-host runs).")
flags.DEFINE_integer("num_processes", None, "Number of processes (multi-host runs).")
flags.DEFINE_integer("process_id", None, "This process's index (multi-host runs).")
config_flags.DEFINE_config_file("config", None, "Training config file (configs/ebst.py[:variant]).",
                                lock_config=True)
flags.mark_flags_as_required(["config", "workdir"])


def _initialize_distributed() -> None:
    """Joins the process group when there is one: explicit flags, or JAX's cluster detection."""
    explicit = FLAGS.coordinator_address is not None
    if explicit:
        jax.distributed.initialize(coordinator_address=FLAGS.coordinator_address,
                                   num_processes=FLAGS.num_processes, process_id=FLAGS.process_id)
        return
    try:
        jax.distributed.initialize()  # TPU pods, SLURM, Open MPI, ...: found from the environment
    except (ValueError, RuntimeError) as e:
        logging.info("Single process run (no cluster detected: %s)", e)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    runtime.setup()  # before JAX starts its backend (jax.distributed.initialize does)
    _initialize_distributed()
    logging.info("JAX process %d of %d, devices: %s", jax.process_index(), jax.process_count(), jax.devices())
    results = train.train(FLAGS.config, FLAGS.workdir)
    for result in results:
        logging.info("phase %s: step %d%s %s", result.phase, result.last_step,
                     " (stopped on request)" if result.preempted else "", result.metrics)


if __name__ == "__main__":
    app.run(main)
