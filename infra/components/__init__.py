"""One ComponentResource per concern; every child is named after its component."""
