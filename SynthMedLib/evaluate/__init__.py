"""Measured quality of a trained model against the simulated cohort's ground truth
(``synthmed evaluate``): autoencoder reconstruction, control by the conditions, image/label
agreement, realism, diversity, memorisation and speed, written as a markdown report with plots."""
