"""Custom feature functions of use cases (`features.custom.function: batchml.usecases.<module>:<function>`).

Put a use case's function here so it is importable wherever tasks run (it ships with the package).
"""
