"""Evaluation of spiral checkpoints: games, exploitability and transfer to math benchmarks.

`spiral.evaluate.math_bench` loads the math benchmarks and builds their prompts;
`spiral.evaluate.grade` grades model answers with math-verify. Both are imported on demand.
"""
