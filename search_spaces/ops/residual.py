"""(being written)"""
OP_DEFS: tuple = ()
