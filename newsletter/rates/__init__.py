"""Currency rates: providers behind one contract, history, and the header."""
