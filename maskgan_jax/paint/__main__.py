from maskgan_jax.paint import run

run()
