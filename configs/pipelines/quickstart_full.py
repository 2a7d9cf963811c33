# The quickstart with every attack: quickstart.py plus ESTAS (the other fine-tuning attack,
# defended like BadEncoder) and the poisoning attacks SSL-Backdoor and CTRL, which poison the
# same 3-epoch SimCLR pretraining (two more pretrainings), defended by CLP and BMAIU.  Same work
# dir as quickstart.py, so after `bash tools/quickstart.sh` only the new steps run:
#   python tools/pipeline.py configs/pipelines/quickstart_full.py
# At this scale the poisoning attacks do not take (ASR at the clean encoder's level; they need
# hundreds of SSL epochs, configs/pipelines/paper_cifar10.py): the rows show that, and what the
# defenses cost on an encoder with no working backdoor.  Needs the SSL-Backdoor trigger in
# $BMAIU_TRIGGER_ROOT (default data/triggers)/htba/.
_base_ = ['./quickstart.py']

attacks = dict(
    sslbackdoor=dict(
        name='SSL-Backdoor', type='poison', evaluate='sslbackdoor',
        config=dict(
            simclr='configs/attacks/sslbackdoor_resnet18-w16_simclr_1xb256-coslr-8e_cifar10.py'),
        cfg_options={'train_dataloader.dataset.dataset.indices': 10000}),
    ctrl=dict(
        name='CTRL', type='poison', evaluate='ctrl',
        config=dict(simclr='configs/attacks/ctrl_resnet18-w16_simclr_1xb256-coslr-8e_cifar10.py'),
        cfg_options={'train_dataloader.dataset.dataset.indices': 10000}),
)

studies = dict(
    table3=dict(attacks=['sslbackdoor', 'ctrl', 'badencoder', 'estas'], defenses=['clp', 'bmaiu']),
    search=dict(
        title='BMAIU with a searched custom trigger, and the fine-tuning-only control, on the '
        'fine-tuning attacks',
        table='grid', ssl=['simclr'], attacks=['badencoder', 'estas'],
        defenses=['clp', 'bmaiu', 'searched_trigger', 'finetune']),
)

estimates = {'*/sslbackdoor/none': 270, '*/ctrl/none': 240, '*/estas/none': 200}
