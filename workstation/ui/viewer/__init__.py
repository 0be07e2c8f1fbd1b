"""The image viewer: viewports and the page that holds them."""
