print("backprop: CLI coming")
