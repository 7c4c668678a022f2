"""The Light-weight Embedding Evaluator (LEE): proxy CTR models that score representation snapshots."""
