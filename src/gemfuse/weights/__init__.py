"""Own the weights: fetch them, plan whether they fit, quantise them."""
