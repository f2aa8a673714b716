"""spade_rt/runtime"""
