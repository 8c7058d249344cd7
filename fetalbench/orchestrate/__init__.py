"""Many runs: suites (the grids of the benchmark), the local grid and Slurm, sharing one run
loop."""
