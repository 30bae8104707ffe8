#!/usr/bin/env bash
# VLM² fine-tuning on one node with 8 GPUs: torchrun + DeepSpeed ZeRO (see docs/training.md).
#
#   bash configs/train_vlm2_8gpu.sh /models/llava-video-vlm2 data/train.json checkpoints/vlm2
#   (/models/llava-video-vlm2 from: spatialvlm convert llava-video /models/LLaVA-Video-7B-Qwen2 /models/llava-video-vlm2)
#
# ZERO=configs/zero3.json for full language-model tuning or when ZeRO-2 runs out of memory;
# ZeRO-2 is faster and fits LoRA on a 7B model with 80 GB GPUs.
set -euo pipefail
MODEL=${1:?base checkpoint directory (LLaVA-OneVision HF format, or LLaVA-Video converted by spatialvlm convert llava-video)}
DATA=${2:?LLaVA-format conversation JSON}
OUTPUT=${3:-checkpoints/vlm2}
ZERO=${ZERO:-configs/zero2.json}
GPUS=${GPUS:-8}

torchrun --nnodes 1 --nproc_per_node "$GPUS" --master_port "${MASTER_PORT:-29500}" \
  -m spatialvlm.cli train \
  --deepspeed "$ZERO" \
  --model_name_or_path "$MODEL" \
  --data_path "$DATA" \
  --output_dir "$OUTPUT" \
  --use_dual_memory True --memory_L_w 8 --memory_L_e 32 \
  --use_spatial_fusion True --use_coordinate_injection True --use_viewpoint_alignment True \
  --mm_tunable_parts fusion,dual_memory,mm_mlp_adapter,mm_language_model \
  --lora_enable True --lora_r 128 --lora_alpha 256 \
  --num_frames 32 --memory_mode per_sample --model_max_length 32768 \
  --bf16 True \
  --num_train_epochs 1 \
  --per_device_train_batch_size 1 \
  --gradient_accumulation_steps 2 \
  --learning_rate 2e-5 \
  --weight_decay 0.0 \
  --warmup_steps 0.03 \
  --lr_scheduler_type cosine \
  --activation_checkpointing True \
  --dataloader_num_workers 4 \
  --logging_steps 10 \
  --save_strategy steps --save_steps 500 --save_total_limit 2 \
  --report_to none
