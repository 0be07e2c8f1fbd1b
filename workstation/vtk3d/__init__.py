"""MPR and 3D through VTK: VTK is allowed here (and in ui/mpr), Qt is not. Imported only when MPR
opens, so start-up, the browser and the 2D viewer never load VTK."""
