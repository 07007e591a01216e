"""Where the work runs: `local`, the one ordered pool of forked workers that clean, train and
predict-dir share; `ray`, Ray Data's actors over a cluster (`--engine ray`). Both return
results in the order of their inputs, so every engine writes the same rows."""
