print("regression example: see Sources/Backprop/Regression.swift")
