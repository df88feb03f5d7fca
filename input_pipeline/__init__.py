"""Input pipeline: data sources, preprocessing, and tf.data datasets."""
