"""CoCo-INR (fukunyin/CoCo-NeRF): VolSDF with codebook and coordinate attention.

In progress (issue #10): the attention modules (``cocoinr.models.attention``). The SDF-network
pieces it shares with sfd are in ``geomkit.sdf``.
"""
