"""The reading viewer's state without Qt: view state and transforms, viewport and layout models,
linking between viewports, annotations and measurements, corner texts, key images. Widgets
observe these models and paint; print and export read the same models."""
