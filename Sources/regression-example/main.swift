print("regression example")
