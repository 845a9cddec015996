

def gif_frames(path) -> tuple[int, int]:
    """(frames, total duration in ms) of a GIF. Pillow merges identical consecutive frames into
    one of their summed duration (an empty decoded object renders black from every camera), so
    the duration tells how many views were written."""
    from PIL import Image

    with Image.open(path) as gif:
        total = 0
        for i in range(gif.n_frames):
            gif.seek(i)
            total += int(gif.info.get("duration", 0))
        return gif.n_frames, total
