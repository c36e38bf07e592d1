-- name: latent_sets
-- description: The latent sets `refvie latents` made: VAE, clip geometry, rows, rows cut shorter (prefix_cut) and the shortest cut, dtype.
SELECT latent_set, any_value(vae) AS vae, any_value(frames) AS frames, any_value(sampling) AS sampling,
       any_value(size) AS size, any_value(max_pixels) AS max_pixels, count(*) AS rows,
       count(*) FILTER (WHERE clip_frames < frames) AS cut_shorter, min(coalesce(clip_frames, frames)) AS shortest,
       any_value(dtype) AS dtype,
       max(created_at) AS newest
FROM latents
GROUP BY latent_set
ORDER BY latent_set
