"""The networks of SfD: NeuS geometry, proxy colour, instance classifier, visibility, material."""
